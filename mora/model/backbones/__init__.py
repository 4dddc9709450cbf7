"""mora.model.backbones"""
