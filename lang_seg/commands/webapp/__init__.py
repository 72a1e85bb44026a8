"""The browser demo's Streamlit page (``page.py``), started by ``lseg-app``.

A package of its own because Streamlit puts the page's folder on ``sys.path``:
here that adds nothing but the page itself.
"""
