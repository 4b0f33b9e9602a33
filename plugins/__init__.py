"""Plugin hooks, the plugin manager and the built-in plugin."""
from .hookspecs import hookimpl
from .manager import PluginInfo, PluginManager, get_manager

__all__ = ["hookimpl", "PluginInfo", "PluginManager", "get_manager"]
