"""Entry-point shim: ``python -m mamo.ablation`` (README, docs) runs flows/ablation.py."""
from flows.ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
