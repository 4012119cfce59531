"""netsprint: the reference implementation behind the 26-week networking workbook.

Each subpackage is one week's (or one phase's) component; notebooks import from here.
"""

__version__ = "0.1.0"
