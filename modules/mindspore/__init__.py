"""The Lightning shell's MindSpore backend: the LightningModule whose weights live in MindSpore, the
optimizers Lightning steps, the bridge that runs MindSpore's forward, backward and update, the tensor
hand-off between the frameworks, and the DDP strategy for a module without torch parameters."""
