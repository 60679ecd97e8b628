"""Distillation: the training config, teachers and their score cache, the student builder, the trainer glue."""
