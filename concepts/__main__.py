"""CLI of the concepts stage: ``python -m concepts build|annotate|show|train-tokenizer``."""
from concepts.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
