"""The study configs shipped with the package (smoke, demo, paper): `studies/ablation.py --config NAME`."""
