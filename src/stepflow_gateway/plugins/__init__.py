"""Component sources. Every source, built in or third party, is a plugin (see ``base``)."""
