"""The differential tester behind scripts/difftest.py."""
