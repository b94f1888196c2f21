"""microtome.store"""
