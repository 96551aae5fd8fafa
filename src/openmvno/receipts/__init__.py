"""Receipts: sequential numbers, issued on fulfilment, HTML and PDF."""
