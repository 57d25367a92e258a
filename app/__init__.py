"""SignVault: a self-hosted PAdES signing server."""

import warnings

# cryptography 51 deprecates DSA and warns when pyHanko imports its key types;
# SignVault never uses DSA (the vault refuses such keys), so operators need not see it.
warnings.filterwarnings("ignore", message="DSA is deprecated")

__version__ = "0.1.0"
