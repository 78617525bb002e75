"""Teachers: the prompts, the generation loop and the teachers that write rationales, and their resumable run."""
