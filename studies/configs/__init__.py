"""The study configs shipped with the package (smoke, demo, known_answer, paper): `studies/ablation.py --config NAME`."""
