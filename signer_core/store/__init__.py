"""The CA database: schema, connections and transactions, the audit chain."""
