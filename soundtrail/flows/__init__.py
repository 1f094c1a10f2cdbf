"""Prefect flows that run the stage tasks on Ray through prefect-ray's RayTaskRunner."""
