"""3DVADER stage 3: articulated objects from monocular video (rigid parts, skinning, learned poses)."""
