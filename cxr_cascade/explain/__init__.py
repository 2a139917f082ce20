"""Explanations: Grad-CAM / Grad-CAM++ heatmaps and their overlays on the radiograph."""
