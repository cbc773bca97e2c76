"""Entry-point shim: ``python -m mamo.demo`` (README, ``make demo``) runs flows/demo.py."""
from flows.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
