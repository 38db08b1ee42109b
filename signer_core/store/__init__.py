"""The CA database: its schema and migrations, and one module per subject owning its tables' SQL."""
