"""Financial risk: per-entity real-time features, training (LightGBM and/or Isolation Forest),
thresholds, a safe rules language and evaluation against a rules-only baseline."""
