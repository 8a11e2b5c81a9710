//! Pre-commit and pre-merge webhooks from `_lakefs_actions/*.yaml` (lakefs-api.md §8).
