"""Regenerate README.md's table dictionary from the models' comments (`--check`: only compare).

.venv/bin/python scripts/table_dictionary.py
"""

import sys

from usage_assets.warehouse.table_dictionary import main

if __name__ == "__main__":
    sys.exit(main())
