"""Who may use what: users and tokens, grants (集中授权), access requests, consent (个人授权)."""
