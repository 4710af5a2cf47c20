"""Package data the app reads at run time: the model catalog, the window's icon, the demo model."""
