#!/bin/sh
echo "Starting task script."
# Something complicated...
echo "Task complete."
