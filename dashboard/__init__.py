"""The Dash dashboard, installed as heartbeatai.dashboard."""
