"""Invoices domain: priced draft invoices per client-month."""
