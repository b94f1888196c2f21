"""microtome.pipeline"""
