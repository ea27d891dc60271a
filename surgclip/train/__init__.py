"""Training: a thin LightningModule over SurgCLIP, callbacks, and the LightningCLI entry point."""
