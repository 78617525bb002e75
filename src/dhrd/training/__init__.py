"""Training: DHRDTrainingArguments and dhrd train's flags, the Trainer and its loss, and the run that saves a model."""
