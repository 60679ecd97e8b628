"""Distillation: teachers and their score cache, training sets, the student builder, the trainer glue."""
