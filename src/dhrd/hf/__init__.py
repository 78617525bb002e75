"""Self-contained modeling code that ``save_pretrained`` copies beside the weights.

These two files import only ``torch`` and ``transformers`` so that a saved DHRD classifier loads with
``trust_remote_code=True`` on a machine where dhrd is not installed.
"""
