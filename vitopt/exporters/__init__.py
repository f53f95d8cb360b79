"""One module per target behind :class:`vitopt.exporters.base.Exporter`; see ``vitopt.formats``."""
