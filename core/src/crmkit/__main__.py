"""``python -m crmkit``: the same as the ``crmkit`` console script."""

from crmkit.cli import main

if __name__ == "__main__":
    main()
