"""Split custody of database passwords: Shamir shares held in OpenBao/Vault, one custodian each."""
