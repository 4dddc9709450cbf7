"""mora.training"""
