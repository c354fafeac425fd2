"""`python -m config > docs/configuration.md`: the settings reference, from the fields."""

from config.reference import settings_reference

print(settings_reference(), end="")
