"""InfraValidator: loads the candidate in a real model server and queries it before the push."""
from components.infra_validator.component import InfraValidator  # noqa: F401
