"""The relay node: probes peer regions, reports links, holds the controller's route tables."""
