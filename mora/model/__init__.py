"""mora.model"""
