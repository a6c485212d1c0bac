"""AiiDA data types: DFPT results, ML predictions and trained models."""

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.data.model import ModelData
from aiida_dielectrics.data.prediction import PredictionData

__all__ = ('DielectricData', 'ModelData', 'PredictionData')
