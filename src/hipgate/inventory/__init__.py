"""Inventory of one provincial deployment: Ansible YAML inventory + hipgate settings."""

from hipgate.inventory.load import Inventory, load_inventory

__all__ = ["Inventory", "load_inventory"]
