"""One fleet run, whatever engine carries it: its phases in order (pipeline), the server side of each
phase (phases), what a device does in each (client_tasks), how the two reach each other (transport),
the latent service (service), the FedAvg baseline (fedavg) and the run's outputs (report).
"""
from fleet.run.client_tasks import LocalData, PublicSetMismatch, latent_evaluate, requantize_upload
from fleet.run.messages import ClientEvaluation, ClientUpload, LatentTask, RequantizedUpload
from fleet.run.fedavg import build_mlp, evaluate, train_local
from fleet.run.phases import summarize_latent
from fleet.run.pipeline import execute, run_on_grid
from fleet.run.service import ExternalService, ServiceHandle
from fleet.run.transport import (
                                 LATENT_ACTION,
                                 PROGRESS_ENV,
                                 FlowerTransport,
                                 LocalTransport,
                                 Transport,
                                 read_init,
                                 read_task,
                                 reply,
)

__all__ = ["LATENT_ACTION", "PROGRESS_ENV", "ClientEvaluation", "ClientUpload", "ExternalService", "FlowerTransport",
           "LatentTask", "LocalData", "LocalTransport", "PublicSetMismatch", "RequantizedUpload", "ServiceHandle", "Transport", "build_mlp", "evaluate", "execute", "latent_evaluate", "read_init",
           "read_task", "reply", "requantize_upload", "run_on_grid", "summarize_latent", "train_local"]
