package page

//go:generate ../../../scripts/genwasm.sh
