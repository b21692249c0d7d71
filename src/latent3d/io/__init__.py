"""File formats: depth PNG-16 and LDM3D packing, 3DGS PLY, meshes (GLB/OBJ), video, atomic writes."""
