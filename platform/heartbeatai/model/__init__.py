"""model layer of the HeartBeatAI platform (see DESIGN.md)."""
