"""Hyperparameter tuning with Optuna: the `tuning:` spec section (`tuning.spec`) and the study (`tuning.study`)."""
