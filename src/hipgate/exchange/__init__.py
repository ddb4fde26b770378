"""The exchange with the national platform as data: the interface document (interfaces/) and the
exchange dataset (datasets/), and the functions that read, check and use them; message signing."""
