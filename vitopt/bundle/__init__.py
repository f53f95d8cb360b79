"""``vitopt bundle``: a compress output folder packed for an iOS or Android app, and ``bundle verify``."""
