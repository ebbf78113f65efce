"""Thin routes: parse, call one service function in a unit of work, render the wire JSON."""

SUB = "/subscriptions/{sub}"
GROUP = SUB + "/resourceGroups/{group}"
BATCHAI = GROUP + "/providers/Microsoft.BatchAI"
WORKSPACE = BATCHAI + "/workspaces/{workspace}"
EXPERIMENT = WORKSPACE + "/experiments/{experiment}"
