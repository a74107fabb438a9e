"""MLC reproduction."""
