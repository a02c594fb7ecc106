"""Pictures of DeepFinder data and results: matplotlib figures and numpy images, no Scipion.

Drawn by the protocols into PNG files and by the viewers into Tk windows.
"""
