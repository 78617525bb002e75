"""Data in: SuperGLUE tasks and your own files read as examples, their lengths, and cached rationales."""
