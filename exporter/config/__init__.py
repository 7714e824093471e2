"""Configuration: YAML parsed once into frozen, typed objects."""

from exporter.config.loader import ConfigError, load_config, parse_config
from exporter.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
