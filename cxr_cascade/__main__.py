"""`python -m cxr_cascade` is the `cxr-cascade` console script."""

from cxr_cascade.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
